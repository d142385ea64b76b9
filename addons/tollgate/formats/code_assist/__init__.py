"""Gemini Code Assist's API (cloudcode-pa.googleapis.com/v1internal): Gemini's generateContent
inside an envelope. Only the envelope is read here (`envelope`); what it wraps is read by
`formats/gemini_generate/`."""
