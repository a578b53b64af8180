"""What of an answer is content, by its type: a JSON answer (by Content-Type, or any answer of a
job with a `json` key) is stored as stable JSON, its keys sorted and indented, so reordered keys or
reformatting are no change; `json = "<JMESPath>"` keeps only what the expression selects, so a
volatile field (`generated`, a timestamp) elsewhere in the document is no change either.

    json = "items[?status=='open'].{title: title, date: date}"

JMESPath (the `jmespath` package: small, pure Python, what the AWS CLI's --query uses) is compiled
when the job is built: a bad expression is a config error naming the job and key.
"""

import json

MAX_DEPTH_NOTE = "nested too deeply to be read"


class ContentError(ValueError):
    """The answer is not what the job's content type says: that check's error, never a change."""


def is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json") or kind == "text/json"


def check_expression(expression) -> None:
    """ValueError naming key 'json' for an expression JMESPath cannot compile."""
    if not isinstance(expression, str) or not expression or len(expression) > 2000:
        raise ValueError("key 'json' must be a JMESPath expression of at most 2,000 characters")
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"key 'json': {expression[:80]!r} is not a JMESPath expression: {' '.join(str(exc).split())[:200]}") from None


def normalized(text: str, content_type: str, expression: str | None) -> str:
    """The content to filter and store: JSON made stable (and selected), anything else as it is."""
    if expression is None and not is_json(content_type):
        return text
    try:
        document = json.loads(text)
    except RecursionError:
        raise ContentError(f"JSON {MAX_DEPTH_NOTE}") from None
    except ValueError as exc:
        if expression is None:
            return text  # labelled JSON but not: kept as text, as served
        raise ContentError(f"the answer is not JSON, which key 'json' selects from ({str(exc)[:100]})") from None
    if expression is not None:
        import jmespath

        document = jmespath.search(expression, document)
    try:
        return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False)
    except RecursionError:
        raise ContentError(f"JSON {MAX_DEPTH_NOTE}") from None
