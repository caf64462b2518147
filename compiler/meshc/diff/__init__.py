"""`meshc diff`: two sides -> an identity-keyed change set -> text, JSON, Markdown."""
