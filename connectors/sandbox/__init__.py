"""Local emulators of the providers' APIs, speaking their own wire formats.

The hub reaches them through the real SDKs redirected by base URL only; tests and
``make run`` start them in-process, ``hub sandbox`` runs them standalone.
"""
