"""The job life cycle: pure model and transitions (`model`), Firestore persistence (`store`)."""
