"""Who is calling: the stage that identifies every call's caller."""
