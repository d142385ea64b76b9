"""The stage where the policy decides every call."""
