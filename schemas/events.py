"""Input event contracts: purchase, engagement, feedback and profile (a customer's attributes).

One JSON object per Kafka message; the message key is the ``customer_id``. The field names are a
public contract consumed by other teams: change them only with a new contract version.

Validation is strict (no type coercion, no unknown fields, finite numbers, timezone-aware
timestamps normalised to UTC) and every error names the offending field:

>>> from schemas.events import parse_event, EventValidationError
>>> e = parse_event(b'{"type":"purchase","event_id":"e1","customer_id":"c1",'
...                 b'"timestamp":"2026-01-02T03:04:05+02:00","amount":12.5}')
>>> e.timestamp.isoformat(), e.currency
('2026-01-02T01:04:05+00:00', 'USD')
>>> try:
...     parse_event(b'{"type":"purchase","event_id":"e1","customer_id":"c1",'
...                 b'"timestamp":"2026-01-02T03:04:05Z","amount":"12"}')
... except EventValidationError as err:
...     print(err)
amount: Input should be a valid number
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from pydantic_core import PydanticCustomError

from schemas import codes
from schemas.errors import ContractError
from schemas.json_escapes import lone_surrogate_problem
from schemas.json_keys import duplicate_key, keys_may_repeat
from schemas.timestamps import Timestamp

CONTRACT_VERSION = "1.0"


def _exported_pattern(pattern: str, **schema: Any) -> WithJsonSchema:
    """The JSON Schema of a string with ``pattern``, ending in ``$(?!\\n)`` instead of ``$``.

    The runtime (pydantic's Rust regex) reads ``$`` as the end of the text, as ECMA-262 does; Python's
    ``re`` (``jsonschema`` checks patterns with ``re.search``) also lets it match before a final
    newline, so ``"c1\\n"`` would pass the published schema there: the lookahead forbids it and
    means nothing to ECMA-262 validators.
    """
    assert pattern.endswith("$")
    return WithJsonSchema({"type": "string", **schema, "pattern": pattern + "(?!\\n)"})


_IDENTIFIER = r"^[\x21-\x7E]+$"
#: Identifiers: printable, no whitespace or control characters, bounded (they become Kafka keys).
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_IDENTIFIER),
                       _exported_pattern(_IDENTIFIER, minLength=1, maxLength=128)]
#: ISO 4217 alphabetic code (upper case).
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), _exported_pattern(r"^[A-Z]{3}$")]


def _whole(value: Any) -> Any:
    """A number with a zero fraction (``2.0``) is an integer: JSON has one number type, and JSON
    Schema's ``"type": "integer"`` is about the value, not how it is written (draft 2020-12,
    validation 6.1.1). Other values go on to the strict int check (``1.5``, ``true``, ``"2"`` fail)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


#: An integer field of a JSON contract (see :func:`_whole`); bounds go before it:
#: ``Annotated[int, Field(ge=0), WHOLE]`` (after it pydantic cannot export them).
WHOLE = BeforeValidator(_whole)
#: An unbounded integer field of a contract.
Whole = Annotated[int, WHOLE]


def parse_output(model: type[BaseModel], raw: bytes | str) -> BaseModel:
    """Read back an output contract (a segment change, a dead letter) as its consumers must: strictly,
    so that it accepts what the published schema accepts (no ``"3"`` for 3, no epoch for a time)."""
    reject_repeated = duplicate_key_problem(raw)
    if reject_repeated is not None:
        raise EventValidationError([reject_repeated])
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise EventValidationError.from_pydantic(exc) from None

MAX_AMOUNT = 1e9


class Channel(str, Enum):
    """Where the interaction happened. A closed set: it is used as a state key and a metric label."""

    web = "web"
    mobile_app = "mobile_app"
    email = "email"
    sms = "sms"
    push = "push"
    store = "store"
    social = "social"
    call_center = "call_center"
    partner = "partner"
    other = "other"


class EngagementAction(str, Enum):
    page_view = "page_view"
    product_view = "product_view"
    search = "search"
    add_to_cart = "add_to_cart"
    wishlist_add = "wishlist_add"
    checkout_start = "checkout_start"
    email_open = "email_open"
    email_click = "email_click"
    push_open = "push_open"
    app_session = "app_session"
    social_share = "social_share"
    referral = "referral"


#: Actions that spread the brand: counted as the customer's influence.
INFLUENCE_ACTIONS = frozenset({EngagementAction.social_share, EngagementAction.referral})


class FeedbackKind(str, Enum):
    nps = "nps"
    csat = "csat"
    review = "review"
    support_ticket = "support_ticket"
    complaint = "complaint"


#: Score range per kind; kinds not listed carry no score.
SCORE_RANGES: dict[FeedbackKind, tuple[int, int]] = {
    FeedbackKind.nps: (0, 10),
    FeedbackKind.csat: (1, 5),
    FeedbackKind.review: (1, 5),
}


def _event_schema(schema: dict[str, Any], cls: type) -> None:
    """What the published schema must add to pydantic's so that it accepts what the runtime does:
    ``type`` is required on every topic (the worker validates every message as the union, keyed by
    ``type``); a feedback's ``score`` depends on its ``kind`` (:data:`SCORE_RANGES`)."""
    schema["required"] = ["type", *schema.get("required", [])]
    if cls.__name__ == "FeedbackEvent":
        rules: list[dict[str, Any]] = [
            {"if": {"properties": {"kind": {"const": kind.value}}, "required": ["kind"]},
             "then": {"properties": {"score": {"type": "integer", "minimum": lo, "maximum": hi}},
                      "required": ["score"]}}
            for kind, (lo, hi) in SCORE_RANGES.items()
        ]
        unscored = [kind.value for kind in FeedbackKind if kind not in SCORE_RANGES]
        rules.append({"if": {"properties": {"kind": {"enum": unscored}}, "required": ["kind"]},
                      "then": {"properties": {"score": {"type": "null"}}}})
        schema["allOf"] = rules


class _Event(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=False,
        json_schema_extra=_event_schema,
    )

    event_id: Identifier = Field(description="Unique per customer and event type. A repeated event_id is "
                                 "applied once if the original was applied less than 7 days (of the customer's "
                                 "event time) before, or is among the customer's last 16 events of its type "
                                 "(docs/contracts.md); a message Kafka redelivers is recognised however old.")
    customer_id: Identifier = Field(description="Also the Kafka message key.")
    timestamp: Timestamp = Field(
        description="RFC 3339 date-time with a UTC offset (e.g. 2026-01-02T03:04:05+02:00), year 1990-2099 "
                    "as written, no leap second; normalised to UTC (schemas/timestamps.py, docs/contracts.md)."
    )


class PurchaseEvent(_Event):
    """A purchase, or a refund when ``amount`` is negative.

    Refunds are purchases with a negative amount (ideally carrying the refunded ``order_id``):
    they reduce net spend and count as refunds, not as purchases or purchase days.
    """

    type: Literal["purchase"] = "purchase"
    amount: float = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="Order value; negative = refund.")
    currency: CurrencyCode = Field("USD", description="ISO 4217 code.")
    quantity: Annotated[int, Field(ge=1, le=1_000_000), WHOLE] | None = None
    channel: Channel | None = None
    order_id: Identifier | None = None

    @property
    def is_refund(self) -> bool:
        return self.amount < 0


class EngagementEvent(_Event):
    type: Literal["engagement"] = "engagement"
    action: EngagementAction
    channel: Channel | None = None
    duration_s: float | None = Field(None, ge=0, le=86_400, description="Seconds spent, when known.")


class FeedbackEvent(_Event):
    type: Literal["feedback"] = "feedback"
    kind: FeedbackKind
    score: Annotated[int, WHOLE] | None = Field(None, description="nps 0-10, csat 1-5, review 1-5; absent for other kinds.")
    text: str | None = Field(None, max_length=10_000)

    @model_validator(mode="after")
    def _score_fits_kind(self) -> "FeedbackEvent":
        bounds = SCORE_RANGES.get(self.kind)
        if bounds is None:
            if self.score is not None:
                raise _FieldError("score", f"must be absent for kind '{self.kind.value}'")
        elif self.score is None:
            raise _FieldError("score", f"is required for kind '{self.kind.value}'")
        elif not bounds[0] <= self.score <= bounds[1]:
            raise _FieldError("score", f"must be {bounds[0]}-{bounds[1]} for kind '{self.kind.value}'")
        return self


class IncomeBand(str, Enum):
    """Household income band, lowest first (ordinal). The bands' bounds are the producer's (a
    market's quintiles, typically); segstream only orders them."""

    low = "low"
    lower_middle = "lower_middle"
    middle = "middle"
    upper_middle = "upper_middle"
    high = "high"


class Education(str, Enum):
    """Highest level of education completed, lowest first (ordinal; ISCED 2011 levels 1, 2-3,
    4-5, 6, 7, 8)."""

    primary = "primary"
    secondary = "secondary"
    post_secondary = "post_secondary"
    bachelor = "bachelor"
    master = "master"
    doctorate = "doctorate"


class CompanySize(str, Enum):
    """A business customer's headcount band, smallest first (ordinal): micro 1-9, small 10-49,
    medium 50-249 (the EU's SME bands, Recommendation 2003/361/EC), large 250-999, enterprise 1000+."""

    micro = "micro"
    small = "small"
    medium = "medium"
    large = "large"
    enterprise = "enterprise"


_TAG = r"^[a-z0-9][a-z0-9_-]{0,39}$"
#: A tag of a bounded vocabulary (interests, lifestyle, industry, occupation, channel): lower case,
#: no spaces, at most 40 characters.
Tag = Annotated[str, StringConstraints(pattern=_TAG), _exported_pattern(_TAG)]
#: At most this many tags per list trait (interests, lifestyle).
MAX_TAGS = 20
_POSTAL = r"^[A-Za-z0-9][A-Za-z0-9 -]{0,15}$"


def _one_of(values: tuple[str, ...], what: str) -> AfterValidator:
    """Accept only ``values``, rejected with ``what`` in the message (a 249- or 5,000-value list
    would drown the field's name)."""
    allowed = frozenset(values)

    def check(value: str) -> str:
        if value not in allowed:
            raise PydanticCustomError("code_list", "{value} is not " + what, {"value": repr(value)})
        return value

    return AfterValidator(check)


def _enum_schema(values: tuple[str, ...]) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": sorted(values)})


CountryCode = Annotated[str, _one_of(codes.COUNTRIES, "an ISO 3166-1 alpha-2 country code (upper case, e.g. 'DE')"),
                        _enum_schema(codes.COUNTRIES)]
RegionCode = Annotated[str, _one_of(codes.REGIONS, "an ISO 3166-2 subdivision code (e.g. 'DE-BY')"),
                       _enum_schema(codes.REGIONS)]
TimeZoneName = Annotated[str, _one_of(codes.TIME_ZONES, "an IANA time zone name (e.g. 'Europe/Berlin')"),
                         _enum_schema(codes.TIME_ZONES)]


class Consent(BaseModel):
    """Marketing consent per channel: true given, false withdrawn, null forgotten; a channel left
    out is unchanged. Unknown consent is no consent (models.profile ``reachable``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    email: bool | None = None
    sms: bool | None = None
    push: bool | None = None


class ProfileEvent(_Event):
    """A customer's attributes as a CDP sends them (Segment's ``identify``, a profile update).

    Every trait is optional. A trait left out is unchanged; a trait sent as ``null`` is cleared.
    Per trait the latest ``timestamp`` wins whatever the arrival order (models/state.py), so a
    late, older update never overwrites a newer one. ``acquisition_cost`` is in ``currency``.
    """

    type: Literal["profile"] = "profile"
    # geographic
    country: CountryCode | None = Field(None, description="ISO 3166-1 alpha-2 code, upper case.")
    region: RegionCode | None = Field(None, description="ISO 3166-2 subdivision code, e.g. DE-BY.")
    city: str | None = Field(None, min_length=1, max_length=100)
    postal_code: Annotated[str, StringConstraints(pattern=_POSTAL), _exported_pattern(_POSTAL)] | None = None
    time_zone: TimeZoneName | None = Field(None, description="IANA time zone name, e.g. Europe/Berlin.")
    # demographic
    birth_year: Annotated[int, Field(ge=1900, le=2100), WHOLE] | None = Field(
        None, description="Year of birth; age is computed from it as of each evaluation.")
    household_size: Annotated[int, Field(ge=1, le=20), WHOLE] | None = None
    income_band: IncomeBand | None = None
    education: Education | None = None
    occupation: Tag | None = None
    # psychographic
    interests: Annotated[list[Tag], Field(max_length=MAX_TAGS)] | None = Field(
        None, description=f"Up to {MAX_TAGS} tags; repeats count once. The list replaces the previous one.")
    lifestyle: Annotated[list[Tag], Field(max_length=MAX_TAGS)] | None = Field(
        None, description=f"Up to {MAX_TAGS} tags; repeats count once. The list replaces the previous one.")
    # firmographic
    industry: Tag | None = None
    company_size: CompanySize | None = None
    # acquisition (CAC) and reach
    acquisition_channel: Tag | None = None
    acquisition_campaign: Identifier | None = None
    acquisition_cost: float | None = Field(None, ge=0, le=MAX_AMOUNT,
                                           description="What acquiring the customer cost, in currency.")
    currency: CurrencyCode = Field("USD", description="ISO 4217 code of acquisition_cost.")
    consent: Consent | None = Field(None, description="Marketing consent per channel (email, sms, push).")


class _FieldError(ValueError):
    """A model-level check that blames one field (pydantic puts model errors at the root)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field = field


Event = Annotated[Union[PurchaseEvent, EngagementEvent, FeedbackEvent, ProfileEvent], Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[PurchaseEvent | EngagementEvent | FeedbackEvent | ProfileEvent] = TypeAdapter(Event)

EVENT_TYPES: dict[str, type[_Event]] = {
    "purchase": PurchaseEvent,
    "engagement": EngagementEvent,
    "feedback": FeedbackEvent,
    "profile": ProfileEvent,
}


class FieldProblem(BaseModel):
    """One reason an input was rejected."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Dotted path of the offending field; '' for the whole message.")
    error: str = Field(description="Machine-readable pydantic error type, e.g. 'missing'.")
    message: str


class EventValidationError(ContractError):
    """An input message broke the contract; ``problems`` names each offending field."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.field or '<message>'}: {p.message}" for p in problems))

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> "EventValidationError":
        problems = []
        for err in exc.errors(include_url=False):
            loc = [str(part) for part in err["loc"]]
            # A discriminated union prefixes locations with the tag ("purchase.amount"): drop it.
            if loc and loc[0] in EVENT_TYPES:
                loc = loc[1:]
            field = ".".join(loc)
            if err["type"].startswith("union_tag"):
                field = "type"  # no or unknown event type
            message = err["msg"]
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, _FieldError):
                field, message = ctx_error.field, str(ctx_error)[len(ctx_error.field) + 1 :]
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            elif err["type"] == "json_invalid":
                message = _json_invalid_message(message, err.get("input"))
            problems.append(FieldProblem(field=field, error=err["type"], message=message))
        return cls(problems)


#: What pydantic's JSON parser says for a lone surrogate's escape (schemas.json_escapes).
_SURROGATE_WORDING = ("unexpected end of hex escape", "lone leading surrogate in hex escape")


def _json_invalid_message(message: str, raw: Any) -> str:
    """``message`` (pydantic's "Invalid JSON: ...") as it is, unless it is pydantic's wording for a
    lone surrogate escape in ``raw``, the text parsed: then what is wrong with it, and where."""
    if not any(words in message for words in _SURROGATE_WORDING) or not isinstance(raw, (str, bytes)):
        return message
    problem = lone_surrogate_problem(raw)
    return f"Invalid JSON: {problem}" if problem else message


AnyEvent = PurchaseEvent | EngagementEvent | FeedbackEvent | ProfileEvent

#: Every field name of the input contracts, plus "key" (the message key) and "type".
#: Per topic: the union of that one type, so that ``type`` is required and checked first.
_TOPIC_ADAPTERS: dict[str, TypeAdapter] = {
    name: TypeAdapter(Annotated[Union[cls], Field(discriminator="type")])  # type: ignore[valid-type,arg-type]
    for name, cls in EVENT_TYPES.items()
}

CONTRACT_FIELDS = frozenset({"key", "type"}.union(*(cls.model_fields for cls in EVENT_TYPES.values())))


def duplicate_key_problem(raw: bytes | str) -> FieldProblem | None:
    """The problem of a message whose JSON repeats a key within an object (a parser keeps the last
    value: ``{"amount":10.0,"amount":-10.0}`` would be a refund), or None (:mod:`schemas.json_keys`)."""
    found = duplicate_key(raw)
    if found is None:
        return None
    path, key = found
    return FieldProblem(field=path, error="duplicate_key", message=f'duplicate key "{key}"')


def parse_event(raw: bytes | str, expected_type: str | None = None) -> AnyEvent:
    """Validate one JSON message against the contract.

    ``expected_type`` checks that the message's ``type`` matches the topic it came from.
    Raises :class:`EventValidationError` naming every offending field; a key written twice is
    one too, named first, even when the message is otherwise valid:

    >>> parse_event(b'{"type":"purchase","event_id":"e1","customer_id":"c1",'
    ...             b'"timestamp":"2026-05-02T10:00:00Z","amount":10.0,"amount":-10.0}')
    Traceback (most recent call last):
    ...
    schemas.events.EventValidationError: amount: duplicate key "amount"
    """
    # On a topic, the message is validated as that topic's type only: an event of another type is
    # one error on "type" (what the topic's published schema says), not the other type's errors.
    adapter = _EVENT_ADAPTER if expected_type is None else _TOPIC_ADAPTERS[expected_type]
    try:
        event = adapter.validate_json(raw)
    except ValidationError as exc:
        error = EventValidationError.from_pydantic(exc)
        if expected_type is not None:
            error = _on_topic(error, expected_type, raw)
        repeated = duplicate_key_problem(raw)  # rare: only for messages rejected anyway
        raise (EventValidationError([repeated, *error.problems]) if repeated else error) from None
    # Every key of a valid event is one of its fields (extra="forbid"), all of them scalars, but a
    # profile's consent is an object: its keys are checked in full (profiles are rare).
    if type(event) is ProfileEvent or keys_may_repeat(raw, len(event.model_fields_set)):
        repeated = duplicate_key_problem(raw)
        if repeated is not None:
            raise EventValidationError([repeated])
    return event


def _on_topic(error: EventValidationError, expected_type: str, raw: bytes | str) -> EventValidationError:
    """Say "wrong topic" for an event whose known type is not the topic's; and when ``type`` is
    missing or wrong, name the other fields the topic's type finds wrong too (as its published
    schema does: the discriminator alone stops at ``type``). Only for rejected messages."""
    problems = []
    for p in error.problems:
        if p.error == "union_tag_invalid":
            tag = p.message.split("'")[1] if "'" in p.message else "?"
            if tag in EVENT_TYPES:
                p = FieldProblem(field="type", error="wrong_topic", message=f"'{tag}' event on the {expected_type} topic")
        problems.append(p)
    if any(p.error.startswith("union_tag") or p.error == "wrong_topic" for p in problems):
        try:
            EVENT_TYPES[expected_type].model_validate_json(raw)
        except ValidationError as exc:
            problems += [p for p in EventValidationError.from_pydantic(exc).problems if p.field.split(".")[0] != "type"]
    return EventValidationError(problems)


def event_json_schema() -> dict:
    """JSON Schema of any input event (a oneOf discriminated by ``type``)."""
    return _EVENT_ADAPTER.json_schema()
