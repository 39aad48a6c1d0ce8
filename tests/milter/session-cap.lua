-- Milter Max Children = 1: a second concurrent session is refused at
-- connect (451 4.3.2, a REPLYCODE) and every stage it tries after that is
-- answered the same way (miltertest always negotiates first, so a stage
-- without negotiation is played by raw packets in test_hostile.py).  The
-- first session is untouched, and its slot is free once it has gone.
dofile(scriptdir .. "/common.lua")
local held = open_conn("held.example.org", "192.0.2.10")
expect(held, SMFIR_CONTINUE, "connect within the cap")

local over = mt.connect(milter, 10, 0.5)
must(mt.conninfo(over, "over.example.org", "192.0.2.11"), "conninfo")
expect(over, SMFIR_REPLYCODE, "connect over the cap")
must(mt.helo(over, "over.example.org"), "helo")
expect(over, SMFIR_REPLYCODE, "HELO over the cap")
must(mt.mailfrom(over, "<over@example.org>"), "mailfrom")
expect(over, SMFIR_REPLYCODE, "MAIL over the cap")
mt.disconnect(over)

must(mt.helo(held, "held.example.org"), "helo")
local r = transaction(held, "<held@example.org>", {"<a@example.com>"},
  {{"Subject", "held"}}, {"body\r\n"})
if r ~= SMFIR_DISCARD then error("held session: expected DISCARD, got " .. tostring(r)) end
mt.disconnect(held)

mt.sleep(0.5)
local again = open_conn("again.example.org", "192.0.2.12")
expect(again, SMFIR_CONTINUE, "connect after the slot was freed")
mt.disconnect(again)
