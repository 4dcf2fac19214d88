"""Relay servers for the app-like profiles. They are written here because no
packaged server speaks these protocols: WhatsApp's relays and Telegram's
reflectors are proprietary, and only their wire formats are (partly) public."""
