"""Spoken image annotations (planned: Whisper transcription of voice clips via faster-whisper,
LLM caption clean-up, the annotators' upload service on SQLite by default).

No stages yet; see ``curate.synth`` for how model stages plug in.
"""
