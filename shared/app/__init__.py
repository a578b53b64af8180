"""The application on top of the kinds: the kinds list, config, entry adapter, events, dispatch,
schema, report and history tools."""
