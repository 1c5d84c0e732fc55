"""Contacts: the people a tenant talks to, and their consent per channel."""
