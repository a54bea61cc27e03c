"""Deterministic, realistic seed data for the TextMagic emulator.

The same seed and anchor always give the same account: a few dozen sessions over the six weeks before the
anchor, hundreds of messages across countries, statuses, prices and senders, some of them deleted.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Status letters the emulator produces. Which letter falls into which stat bucket is undocumented by
# TextMagic; this mapping is the emulator's assumption, chosen so that every bucket is exercised.
STAT_BUCKETS: dict[str, str] = {
    "q": "accepted",
    "s": "scheduled",
    "r": "sent",
    "a": "sent",
    "b": "sent",
    "d": "delivered",
    "e": "failed",
    "f": "failed",
    "u": "failed",
    "j": "rejected",
}
# Letters TextMagic's filter accepts (the published enum), including three with undocumented meaning.
FILTERABLE_STATUSES = frozenset("qsrabdefjuiph")

_FINAL_MIX = "d" * 84 + "f" * 5 + "e" * 2 + "j" * 4 + "u" * 3 + "r" * 2
_RECENT_MIX = "d" * 55 + "r" * 12 + "a" * 10 + "b" * 8 + "q" * 6 + "f" * 4 + "j" * 2 + "e" * 3

# (country, dialling prefix, price of one SMS part, weight)
_COUNTRIES = [
    ("US", "1", 0.049, 34),
    ("GB", "44", 0.040, 24),
    ("CA", "1", 0.045, 8),
    ("DE", "49", 0.085, 10),
    ("AU", "61", 0.060, 8),
    ("FR", "33", 0.075, 6),
    ("ES", "34", 0.070, 4),
    ("NL", "31", 0.090, 3),
    ("IE", "353", 0.065, 3),
]
_FIRST = [
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Lucas",
    "Mia",
    "Ethan",
    "Sofia",
    "Jonas",
    "Chloe",
    "Mateo",
    "Grace",
    "Finn",
    "Amelia",
    "Leon",
    "Isla",
    "Hugo",
    "Zoe",
    "Oscar",
]
_LAST = [
    "Smith",
    "Jones",
    "Brown",
    "Müller",
    "García",
    "Martin",
    "Taylor",
    "Wilson",
    "Dubois",
    "Kelly",
    "Schmidt",
    "Walsh",
    "Nguyen",
    "Rossi",
    "Evans",
    "Murphy",
    "Clarke",
    "Lopez",
    "Fischer",
    "White",
]
# (text, source, destination, reference prefix, recipients range, title)
_CAMPAIGNS: list[tuple[str, str, str, str | None, tuple[int, int], str | None]] = [
    (
        "Hi {First name}, reminder: your appointment at Bright Smile Dental is tomorrow at {time}. "
        "Reply C to confirm.",
        "A",
        "t",
        "appt-reminder",
        (8, 30),
        None,
    ),
    ("Your verification code is {code}. It expires in 10 minutes.", "A", "t", "otp", (1, 4), None),
    (
        "Flash sale! 20% off everything this weekend with code SAVE20. Shop at acme.example/sale. "
        "Reply STOP to opt out.",
        "O",
        "t",
        None,
        (60, 240),
        "Weekend flash sale",
    ),
    (
        "Your order {order} has shipped and arrives {day}. Track it at acme.example/t/{order}",
        "A",
        "t",
        "shipping",
        (5, 25),
        None,
    ),
    ("TEST - please ignore", "O", "t", None, (1, 3), "test"),
    ("Team update: the office is closed on Friday for maintenance.", "X", "t", None, (10, 40), "Staff"),
    ("Hello {First name}, your invoice {invoice} is due on {day}.", "E", "t", "billing", (3, 18), None),
    (
        "This is an automated call from Riverside Clinic about your appointment tomorrow.",
        "O",
        "s",
        None,
        (4, 12),
        "Clinic voice reminder",
    ),
    (
        "Hey {First name}! Thanks for joining Acme Rewards 🎉 You have 100 welcome points.",
        "M",
        "t",
        None,
        (2, 10),
        None,
    ),
    ("Weather alert: storm expected tonight. Secure outdoor items.", "O", "v", None, (15, 45), "Alert"),
]


@dataclass
class SeedData:
    sessions: dict[int, dict[str, Any]] = field(default_factory=dict)
    messages: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def copy(self) -> SeedData:
        """A copy whose sessions and messages can change without touching these (their values are flat)."""
        return SeedData(
            sessions={i: dict(s) for i, s in self.sessions.items()},
            messages={i: [dict(m) for m in ms] for i, ms in self.messages.items()},
        )


def default_anchor() -> datetime:
    """Midnight UTC today: seed dates stay "recent" yet identical for a whole day."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def generate(seed: int = 7, anchor: datetime | None = None) -> SeedData:
    """The account for ``seed`` and ``anchor`` (midnight UTC today by default), fresh to change at will."""
    return _generated(seed, anchor or default_anchor()).copy()


@functools.lru_cache(maxsize=4)
def _generated(seed: int, anchor: datetime) -> SeedData:
    # Made once per seed and day: an emulator resets often (every test does), and the data never differs.
    data = _campaigns(random.Random(seed), anchor)
    # Each with a generator of its own, so that adding one leaves the others' data as it was.
    _repeat_failures(data, random.Random(seed + 1))
    _large_send_out(data, random.Random(seed + 2), anchor)
    _repeat_promotion(data, random.Random(seed + 3), anchor)
    return data


def _campaigns(rng: random.Random, anchor: datetime, sessions: int = 36) -> SeedData:
    data = SeedData()
    session_id = 48_210_000 + rng.randrange(1000)
    message_id = 1_204_900_000 + rng.randrange(100_000)
    contact_ids = [5_100_000 + rng.randrange(900_000) for _ in range(400)]
    # Business hours on the 42 days before the anchor's day...
    starts = sorted(
        anchor - timedelta(days=rng.randint(2, 42)) + timedelta(hours=rng.uniform(7, 20))
        for _ in range(sessions - 2)
    )
    # ...then yesterday's appointment reminder, and one session scheduled for tomorrow.
    starts += [
        anchor - timedelta(days=1) + timedelta(hours=9, minutes=30),
        anchor + timedelta(days=1, hours=9),
    ]
    for index, start in enumerate(starts):
        session_id += rng.randrange(3, 400)
        campaign = (
            0 if index == sessions - 2 else 4 if index in (3, 17, 28) else rng.randrange(len(_CAMPAIGNS))
        )
        text, source, destination, reference, (low, high), title = _CAMPAIGNS[campaign]
        count = rng.randint(low, high)
        age = anchor - start
        rendered = _fill(text, rng, start)
        sender = rng.choice(["447624800500", "12025550143", "ACMEINFO", "BrightSmile"])
        send = _SendOut(session_id, start, rendered, source, destination, sender)
        messages: list[dict[str, Any]] = []
        for _ in range(count):
            country, prefix, unit, _weight = rng.choices(_COUNTRIES, weights=[c[3] for c in _COUNTRIES])[0]
            number = prefix + "".join(str(rng.randrange(10)) for _ in range(10 if prefix == "1" else 9))
            known = rng.random() < 0.7
            first = rng.choice(_FIRST) if known else None
            status = (
                "s" if start > anchor else rng.choice(_RECENT_MIX if age < timedelta(days=2) else _FINAL_MIX)
            )
            message_id += rng.randrange(1, 4)
            # Drawn in the order the data was first made with, so that it stays the same.
            delay = rng.randrange(1, 90)
            contact = rng.choice(contact_ids) if known else None
            last = rng.choice(_LAST) if known else None
            deleted = rng.random() < 0.04
            reason = rng.choice("alcb") if status == "j" else None
            messages.append(
                send.message(
                    message_id,
                    number,
                    country,
                    unit,
                    status,
                    first=first,
                    last=last,
                    contact=contact,
                    delay=delay,
                    deleted=deleted,
                    reason=reason,
                )
            )
        data.messages[session_id] = messages
        data.sessions[session_id] = send.session(messages, reference, title, rng.choice([305, 305, 305, 412]))
    return data


@dataclass(frozen=True)
class _SendOut:
    """One session being made up: what every message of it shares."""

    id: int
    start: datetime
    text: str
    source: str
    destination: str
    sender: str

    def message(
        self,
        message_id: int,
        number: str,
        country: str,
        unit: float,
        status: str,
        *,
        first: str | None,
        last: str | None,
        contact: int | None,
        delay: int,
        deleted: bool,
        reason: str | None,
    ) -> dict[str, Any]:
        parts = 1 if len(self.text) <= 160 else (len(self.text) + 152) // 153
        unicode = any(ord(ch) > 255 for ch in self.text)
        voice = self.destination in ("s", "v")
        charset = None if voice else "UTF-16BE" if unicode else "ISO-8859-1"
        return {
            "id": message_id,
            "receiver": number,
            "sender": self.sender,
            "text": self.text.replace("{First name}", first or "there"),
            "status": status,
            "messageTime": _stamp(self.start + timedelta(seconds=delay)),
            "contactId": contact,
            "sessionId": self.id,
            "avatar": "avatars/dummy_avatar.png",
            "charset": charset,
            "charsetLabel": "Voice" if voice else charset,
            "firstName": first,
            "lastName": last,
            "country": country,
            "phone": number,
            "price": round(unit * parts * (3 if voice else 1), 4),
            "partsCount": parts,
            "deleted": deleted,
            "fromEmail": "billing@acme.example" if self.source == "E" else None,
            "fromNumber": self.sender if self.sender.isdigit() else None,
            **({"rejectReason": reason} if reason else {}),
        }

    def session(
        self, messages: list[dict[str, Any]], reference: str | None, title: str | None, initiator: int
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "startTime": _stamp(self.start),
            "text": self.text,
            "source": self.source,
            "referenceId": f"{reference}-{self.id}" if reference else None,
            "price": round(sum(m["price"] for m in messages), 4),
            "numbersCount": len(messages),
            "destination": self.destination,
            "initiatorId": initiator,
            "title": title,
        }


def _repeat_failures(data: SeedData, rng: random.Random) -> None:
    """Numbers that fail again and again (dead lines, in several sessions), and numbers that failed once and were
    delivered later: what a retry list must tell apart."""
    finished = [
        messages
        for messages in data.messages.values()
        if messages and all(m["status"] not in "qsrab" for m in messages)
    ]
    dead = [f"4479{rng.randrange(10**8):08d}" for _ in range(6)]
    for number in dead:
        for messages in rng.sample(finished, 3):
            message = rng.choice(messages)
            message.update(
                receiver=number, phone=number, country="GB", status=rng.choice("ffe"), deleted=False
            )
            message.pop("rejectReason", None)
    # Failed in an older session, delivered in a newer one: the list is oldest session first.
    for older, newer in zip(finished[:4], finished[-4:], strict=True):
        failed, delivered = rng.choice(older), rng.choice(newer)
        failed.update(status="f", deleted=False)
        failed.pop("rejectReason", None)
        delivered.update(receiver=failed["receiver"], phone=failed["receiver"], country=failed["country"])
        delivered.update(status="d", deleted=False)
        delivered.pop("rejectReason", None)


def _repeat_promotion(data: SeedData, rng: random.Random, anchor: datetime) -> None:
    """Numbers that got the same promotion twice: a few recipients of one weekend flash sale are in the next one
    too, as happens when two lists overlap."""
    sales = sorted(
        (session["startTime"], session_id)
        for session_id, session in data.sessions.items()
        if session["title"] == "Weekend flash sale" and session["startTime"] < _stamp(anchor)
    )
    if len(sales) < 2:
        return
    (_, first), (_, second) = sales[-2:]
    for earlier, later in zip(
        rng.sample(data.messages[first], 3), rng.sample(data.messages[second], 3), strict=True
    ):
        later.update(
            receiver=earlier["receiver"],
            phone=earlier["receiver"],
            country=earlier["country"],
            firstName=earlier["firstName"],
            lastName=earlier["lastName"],
        )


# (country, dialling prefix, price of one SMS part, recipients) of the large send-out.
_LARGE = [
    ("US", "1", 0.049, 1900),
    ("GB", "44", 0.040, 1300),
    ("DE", "49", 0.085, 700),
    ("CA", "1", 0.045, 400),
    ("FR", "33", 0.075, 350),
    ("AU", "61", 0.060, 250),
    ("ES", "34", 0.070, 150),
    ("NL", "31", 0.090, 100),
    ("IE", "353", 0.065, 50),
]


def _large_send_out(data: SeedData, rng: random.Random, anchor: datetime) -> None:
    """A Black Friday promotion to 5,200 recipients in nine countries, four days before the anchor. Its
    alphanumeric sender id is refused by carriers in the US and Canada (rejected, reason c), a carrier outage in
    Germany fails a quarter of its messages, and elsewhere a few fail as usual."""
    start = anchor - timedelta(days=4) + timedelta(hours=10)
    before = max((i for i, s in data.sessions.items() if s["startTime"] <= _stamp(start)), default=48_210_000)
    session_id = before + 1
    send = _SendOut(
        session_id,
        start,
        "BLACK FRIDAY: 40% off everything until midnight with code BF40 at acme.example/bf. Reply STOP to opt out.",
        "O",
        "t",
        "ACMEDEALS",
    )
    message_id = 1_300_000_000 + rng.randrange(100_000)
    messages: list[dict[str, Any]] = []
    for country, prefix, unit, count in _LARGE:
        for _ in range(count):
            mix = (
                "d" * 75 + "j" * 18 + "f" * 4 + "e" + "u" * 2
                if country in ("US", "CA")
                else "d" * 70 + "f" * 25 + "e" * 3 + "j" * 2
                if country == "DE"
                else "d" * 93 + "f" * 3 + "e" + "j" * 2 + "u"
            )
            status = rng.choice(mix)
            known = rng.random() < 0.6
            first = rng.choice(_FIRST) if known else None
            message_id += rng.randrange(1, 3)
            reason = None
            if status == "j":
                reason = "c" if country in ("US", "CA") else rng.choice("alb")
            messages.append(
                send.message(
                    message_id,
                    prefix + "".join(str(rng.randrange(10)) for _ in range(10 if prefix == "1" else 9)),
                    country,
                    unit,
                    status,
                    first=first,
                    last=rng.choice(_LAST) if known else None,
                    contact=None,
                    delay=rng.randrange(1, 1800),
                    deleted=rng.random() < 0.02,
                    reason=reason,
                )
            )
    rng.shuffle(messages)
    data.messages[session_id] = messages
    data.sessions[session_id] = send.session(messages, None, "Black Friday", 305)


def _fill(text: str, rng: random.Random, start: datetime) -> str:
    return (
        text.replace("{time}", f"{rng.randint(8, 17)}:{rng.choice(['00', '15', '30', '45'])}")
        .replace("{code}", f"{rng.randrange(1_000_000):06d}")
        .replace("{order}", f"A{rng.randrange(100_000, 999_999)}")
        .replace("{invoice}", f"INV-{rng.randrange(1000, 9999)}")
        .replace("{day}", (start + timedelta(days=rng.randint(1, 5))).strftime("%A"))
    )


def _stamp(moment: datetime) -> str:
    # TextMagic's format: an offset without a colon, e.g. 2015-06-19T09:48:24+0000.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
