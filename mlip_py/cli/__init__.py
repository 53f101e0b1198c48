"""The ``mlp`` command line (click).  Nothing in the package imports this."""
