"""Message templates of a tenant: the shipped defaults, overrides and custom ones."""
