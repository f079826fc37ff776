"""The sink: the results schema, readers and importers, statistics, comparisons, plots and
reports. Reads files; imports nothing from bench/ or collectives/."""
