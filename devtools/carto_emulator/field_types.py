"""PostgreSQL types as CARTO names them. (Not types.py: that would shadow the standard
library's module when a file of this folder is run as a script.)"""

import re


def carto_type(pgtype: str) -> str:
    """CARTO's `fields` type for a PostgreSQL type name, tested in CARTO's order."""
    if "bool" in pgtype:
        kind = "boolean"
    elif re.search(r"int|float|numeric", pgtype):
        kind = "number"
    elif re.search(r"text|char|unknown", pgtype):
        kind = "string"
    elif re.search(r"date|time", pgtype):
        kind = "date"
    else:
        kind = pgtype
    return kind + "[]" if pgtype.startswith("_") else kind


def type_name(type_names: dict[int, str], oid: int) -> str:
    """The PostgreSQL name of a column's type oid (`type_names` is loaded by postgres.run)."""
    return type_names.get(oid, f"unknown({oid})")


def fields(columns, type_names: dict[int, str]) -> dict:
    """v2's `fields`: {name: {type, pgtype}}."""
    out = {}
    for column in columns or []:
        name = type_name(type_names, column["type_oid"])
        out[column["name"]] = {"type": carto_type(name), "pgtype": name}
    return out


def schema(columns, type_names: dict[int, str]) -> list:
    """CARTO 3's `schema`: [{name, type}], the type as the warehouse names it."""
    return [{"name": c["name"], "type": type_name(type_names, c["type_oid"])} for c in columns or []]
