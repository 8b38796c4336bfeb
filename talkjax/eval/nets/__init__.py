"""Networks of the standard metric suite, each importing its published weights file."""
