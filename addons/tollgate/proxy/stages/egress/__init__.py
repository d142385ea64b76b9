"""The stages of connections to other hosts: egress rules and brokered credentials."""
