"""Cards rendered when they are sent, in Teams: a handoff card the connector turned away
for a while arrives showing the lead as it is then. Activities POSTed to `/api/messages`,
connector calls answered by the stand-in."""

from __future__ import annotations

from bot.outbox.sender import HOLD_THROTTLED
from tests.support import LiveServer, eventually
from tests.teams_standin import Call, TeamsStandIn
from tests.test_teams import (  # noqa: F401 (the fixtures `chat`, `server`, `standin`)
    ALICE,
    Teams,
    card_text,
    chat,
    server,
    standin,
    titles,
)

HOLD = int(HOLD_THROTTLED.total_seconds())


async def test_a_teams_handoff_card_that_waited_shows_the_lead_as_it_is_when_sent(
    chat: Teams,  # noqa: F811 (a fixture)
    server: LiveServer,  # noqa: F811 (a fixture)
    standin: TeamsStandIn,  # noqa: F811 (a fixture)
) -> None:
    await chat.say(ALICE, "hi")
    # Longer than a lane waits with the card claimed: it goes back in line meanwhile.
    standin.fail_sends(1, retry_after=str(HOLD + 1))
    await chat.lead(external_id="L-1", name="Dana Diaz", owner_email=ALICE.email)
    await server.settle()
    assert len(standin.of("throttled")) == 1

    # Meanwhile Alice finds the lead with `leads` and accepts it there.
    await chat.say(ALICE, "leads")
    listed = await chat.handoff_card(ALICE, "Dana Diaz")
    assert "Accept" in titles(await chat.view(ALICE, listed))
    await chat.press(ALICE, listed, "Accept")
    [update] = await chat.updates_of(listed)
    assert "Accepted by Alice" in card_text(update.card)

    def handoff() -> list[Call]:
        cards = standin.of("send", ALICE.conversation)
        return [c for c in cards if "Dana Diaz" in card_text(c.card)][1:]

    [card] = await eventually(handoff, timeout=HOLD + 10)
    assert "Accepted by Alice" in card_text(card.card)
    assert "Accept" not in titles(card.card)
