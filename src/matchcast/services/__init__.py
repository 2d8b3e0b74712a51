"""Domain services: validate, write in one transaction, then hand the events to a publisher."""
