"""The stages of WebSocket calls: OpenAI's Realtime API and the Responses API's WebSocket mode."""
