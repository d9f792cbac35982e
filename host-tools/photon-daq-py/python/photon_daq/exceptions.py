"""Exception classes with EXtra-data's names, bases and messages
(``extra_data.exceptions``), so code catching ``KeyError``/``ValueError`` or
comparing messages behaves the same."""


class FileStructureError(Exception):
    """A file does not have the EuXFEL layout."""


class SourceNameError(KeyError):
    def __init__(self, source=None, custom_message=None):
        self.source = source
        self.custom_message = custom_message

    def __str__(self):
        if self.custom_message is not None:
            return self.custom_message
        return (
            f"This data has no source named {self.source!r}.\n"
            "See data.all_sources for available sources."
        )


class PropertyNameError(KeyError):
    def __init__(self, prop, source):
        self.prop = prop
        self.source = source

    def __str__(self):
        return f"No property {self.prop!r} for source {self.source!r}"


class TrainIDError(KeyError):
    def __init__(self, train_id):
        self.train_id = train_id

    def __str__(self):
        return f"Train ID {self.train_id!r} not found in this data"


class AliasError(KeyError):
    def __init__(self, alias):
        self.alias = alias

    def __str__(self):
        return f"'{self.alias}' not known as alias for this data"


class MultiRunError(ValueError):
    def __str__(self):
        return (
            "The requested data is only available for a single run. This "
            "EXtra-data DataCollection may have data from multiple runs, e.g. "
            "because you have used .union() to combine data. Please retrieve "
            "this information before combining."
        )


class NoDataError(ValueError):
    def __init__(self, source, key=None):
        self.source = source
        self.key = key

    def __str__(self):
        if self.key is not None:
            return f"This data is empty for key {self.key!r} of source {self.source!r}"
        return f"This data is empty for source {self.source!r}"
