"""App-like call profiles: clients that speak the wire formats research reports
for WhatsApp and Telegram calls (../shared/research/restrictions.md §2), the
relay servers they talk to, and a Signal-like WebRTC ladder.

Profiles: ``webrtc`` (the aiortc peer, unchanged), ``signal-like``,
``whatsapp-like``, ``telegram-like``; see :mod:`harness.apps.profiles`."""
