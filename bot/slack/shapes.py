"""What a signed Slack request must look like before Bolt and Liaison's listeners read it.

Bolt reads a request's fields without checking their types (`team` as a list, `actions`
as `[1]`, `view` as a string… end in a TypeError, a 500), and Liaison's listeners read a
few more. These models name the fields either of them reads, with their types; a request
that does not fit is answered 400 with the problem named, before anything runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.core.jsonlimits import loads_bounded

MAX_DEPTH = 64  # Slack's deepest payloads (rich text in a modal's state) nest about 12 deep
NonEmpty = Annotated[str, Field(min_length=1)]


class Shape(BaseModel):
    """Fields not named here are Slack's business and pass through unchecked."""

    model_config = ConfigDict(extra="allow")


class Named(Shape):
    """`{"id": …}`: a team, enterprise, user or channel as Slack nests them."""

    id: str | None = None


class Common(Shape):
    """What Bolt reads from every request (and from the objects it looks into) to build
    its context: who, which team and channel, and where to answer."""

    type: str | None = None
    enterprise: str | Named | None = None
    enterprise_id: str | None = None
    authorizations: list[Common] | None = None
    team: str | Named | None = None
    team_id: str | None = None
    user: str | Named | None = None
    user_id: str | None = None
    user_team: str | None = None
    channel: str | Named | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    event: Common | None = None
    message: Common | None = None
    previous_message: Common | None = None
    item: Common | None = None
    assistant_thread: Common | None = None
    function_data: Shape | None = None
    function_execution_id: str | None = None
    bot_access_token: str | None = None
    view: Shape | None = None
    response_url: str | None = None
    response_urls: list[Shape] | None = None


class Actor(Named):
    """The person behind an interaction: Slack always names them by id."""

    id: NonEmpty


class Choice(Shape):
    value: str


class Action(Shape):
    action_id: str
    block_id: str | None = None
    value: str | None = None
    selected_option: Choice | None = None


class Container(Shape):
    channel_id: str | None = None
    message_ts: str | None = None


class BlockActions(Common):
    """A button press or a pick in a select (opens a modal, hence the trigger)."""

    type: Literal["block_actions"]
    user: Actor
    actions: list[Action] = Field(min_length=1)
    trigger_id: NonEmpty
    container: Container | None = None


class Element(Shape):
    """One input's state in a submitted modal."""

    type: str | None = None
    value: str | None = None
    selected_option: Choice | None = None
    selected_options: list[Choice] | None = None
    selected_date: str | None = None


class ViewState(Shape):
    values: dict[str, dict[str, Element]] = Field(default_factory=dict)


class View(Shape):
    id: NonEmpty
    type: str
    callback_id: str
    private_metadata: str = ""
    state: ViewState = Field(default_factory=ViewState)
    app_installed_team_id: str | None = None

    @field_validator("private_metadata")
    @classmethod
    def _form_state(cls, value: str) -> str:
        if value and form_state(value) is None:
            raise ValueError("must be a JSON object of strings")
        return value


class ViewSubmission(Common):
    """A modal submitted (or closed)."""

    type: Literal["view_submission", "view_closed"]
    user: Actor
    view: View


class MessageEvent(Common):
    type: Literal["message"]
    channel: str
    ts: str
    user: str | None = None
    text: str | None = None
    channel_type: str | None = None
    subtype: str | None = None
    bot_id: str | None = None

    @model_validator(mode="after")
    def _someone(self) -> MessageEvent:
        if not self.user and self.subtype is None and self.bot_id is None:
            raise ValueError("a person's message must name its user")
        return self


class HomeOpened(Common):
    type: Literal["app_home_opened"]
    user: NonEmpty
    channel: str | None = None
    tab: str | None = None


class EventCallback(Common):
    """An Events API event of a kind the manifest subscribes to (a new subscription in
    manifests/slack.yaml needs its model here; a test compares the two)."""

    type: Literal["event_callback"]
    event: Annotated[MessageEvent | HomeOpened, Field(discriminator="type")]
    event_id: str | None = None


class UrlVerification(Shape):
    type: Literal["url_verification"]
    challenge: str


class RateLimited(Common):
    type: Literal["app_rate_limited"]


class SlashCommand(Common):
    """A slash command (form fields are strings already; presence is what matters)."""

    command: Annotated[str, Field(pattern=r"^/\S+$")]
    user_id: NonEmpty
    trigger_id: NonEmpty
    text: str = ""
    channel_id: str | None = None


class SslCheck(Shape):
    ssl_check: str


Typed = Annotated[
    BlockActions | ViewSubmission | EventCallback | UrlVerification | RateLimited,
    Field(discriminator="type"),
]
TYPED: TypeAdapter[Typed] = TypeAdapter(Typed)
EVENTS = (MessageEvent, HomeOpened)


def form_state(metadata: str) -> dict[str, str] | None:
    """A modal's `private_metadata` as the form state Liaison put there, or None."""
    try:
        state = loads_bounded(metadata or "{}", max_depth=1)
    except ValueError:
        return None
    if not isinstance(state, dict) or not all(isinstance(v, str) for v in state.values()):
        return None
    return state


def parse_body(text: str, content_type: str) -> Any:
    """A request body as Slack sends it: JSON (events), a form with the interaction as JSON
    in `payload`, or a plain form (slash commands); JSON nesting bounded, and ValueError
    for JSON that cannot be taken. (Bolt's own parser reads a slash command whose text
    says "payload" as an empty body, and a form starting with "{" as JSON.)"""
    if content_type == "application/json":
        return loads_bounded(text, max_depth=MAX_DEPTH)
    params = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in params:
        return loads_bounded(params["payload"], max_depth=MAX_DEPTH)
    return params


def _explain(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False)[:3]
    ]
    return "; ".join(problems)


def problem(body: Any) -> str | None:
    """Why `body` is not a Slack request Liaison takes, or None when it is one."""
    if not isinstance(body, dict):
        return "the body is not a Slack event, command or interaction payload"
    try:
        if "command" in body:
            SlashCommand.model_validate(body)
        elif "ssl_check" in body:
            SslCheck.model_validate(body)
        elif "type" not in body:
            return "the body is not a Slack event, command or interaction payload"
        else:
            TYPED.validate_python(body)
    except ValidationError as error:
        return "the Slack payload has the wrong shape: " + _explain(error)
    return None


def checked_body(body: bytes, content_type: str, charset: str | None) -> dict[str, Any] | str:
    """A signed request's body, parsed and of the right shape, or why it is refused (400)."""
    try:
        text = body.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return "the body is not text in the character set it declares (UTF-8 by default)"
    try:
        parsed = parse_body(text, content_type)
    except ValueError as error:
        return str(error)
    why = problem(parsed)
    if why is not None:
        return why
    assert isinstance(parsed, dict)  # problem() refuses anything else
    return parsed
