"""The dashboard stores nothing of its own: it streams what the other apps measure."""
