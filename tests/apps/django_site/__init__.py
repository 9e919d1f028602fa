"""A Django site wired as the README says, served by real ASGI servers in the SIGTERM tests."""
