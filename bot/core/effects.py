"""What a handler asks for once its writes are committed; adapters carry it out."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.messages import Card, CardPlace, Form, Report


@dataclass(frozen=True)
class Reply:
    """A private answer to the person who acted (ephemeral in Slack, 1:1 in Teams)."""

    card: Card


@dataclass(frozen=True)
class Notify:
    """A direct message to a member; `lead_id` + `purpose` record where the card lives.

    With `in_thread`, it goes on the thread of that lead's handoff card instead. A DM to
    anyone but the person who acted is owed through the outbox (see `bot.core.owing`);
    `key`, when given, makes owing it twice impossible.

    A message a person caused for someone else (a handoff card, a relayed question or
    answer, a win) goes out at once; a `nudge` — what Liaison sends on its own: reminders,
    escalations, feedback and approval requests — waits for the recipient's working hours.
    """

    member_id: int
    card: Card
    lead_id: int | None = None
    purpose: str = ""
    in_thread: bool = False
    key: str = ""
    nudge: bool = False


@dataclass(frozen=True)
class Post:
    """A message to a configured channel (`slack:C123`, `teams:<conversation id>`)."""

    target: str
    card: Card
    key: str = ""


@dataclass(frozen=True)
class Leased:
    """A card update owed and, in the same transaction, leased to this process's outbox
    sender (`bot.core.owing.UpdateLease`): the click's own task sends it at once, and the
    outbox row is the fallback (a failed send is retried, a lost lease taken over)."""

    message_id: int
    key: str
    revision: int  # the state `UpdateCards.card` shows; a newer one is sent after it
    location: CardPlace


@dataclass(frozen=True)
class UpdateCards:
    """Replace every posted card of `lead_id` with this `purpose`, in place.

    Owed through the outbox with the handler's facts (one row per posted card, rendered
    when sent, so a newer state owed meanwhile is what goes); `card` is the state now.
    `leased`: the rows owing it that this process sends at once (see `Leased`)."""

    lead_id: int
    purpose: str
    card: Card
    leased: tuple[Leased, ...] = ()


@dataclass(frozen=True)
class ShowForm:
    """Open a form for the person who acted."""

    form: Form


@dataclass(frozen=True)
class FormErrors:
    """The submitted form is not acceptable; `errors` maps an input name to why."""

    errors: dict[str, str]


@dataclass(frozen=True)
class ShowReport:
    """A long read (the digest preview) for the person who acted, privately."""

    report: Report


@dataclass(frozen=True)
class Owed:
    """`count` messages were written to the outbox with the handler's facts: drain it now
    rather than at the next tick."""

    count: int


Effect = Reply | Notify | Post | UpdateCards | ShowForm | FormErrors | ShowReport | Owed
