"""Onboarding a tenant on a provider: Twilio's provisioning saga, bring-your-own
accounts, and removal."""
