"""The one exception the diagnostic raises for bad input; the CLI prints it as one line and exits 2."""


class DiagnoseError(ValueError):
    """Bad input (option, checkpoint, data split): the message names the option and what is valid."""
