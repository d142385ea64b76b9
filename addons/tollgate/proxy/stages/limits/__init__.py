"""The stages of the limits: the ledger's reservations and settlements, and conversation roll-up."""
