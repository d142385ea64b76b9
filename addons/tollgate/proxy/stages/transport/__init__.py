"""What a call is and how it travels: classified, translated across wire formats, over WebSocket."""
