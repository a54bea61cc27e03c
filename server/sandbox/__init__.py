"""The built-in TextMagic sandbox: an emulator of the message-sessions API with seeded, made-up data."""

from server.sandbox.emulator import SANDBOX_API_KEY, SANDBOX_USERNAME, Emulator, RecordedRequest

__all__ = ["SANDBOX_API_KEY", "SANDBOX_USERNAME", "Emulator", "RecordedRequest"]
