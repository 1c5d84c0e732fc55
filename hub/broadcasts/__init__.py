"""Broadcasts: one template to many recipients, fanned out at the tenant's send rate."""
