"""Small shared pieces: camera-id rules, text cleaning, logging set-up, the vi/en catalogue."""
