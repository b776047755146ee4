"""No dashboard models to administer."""
