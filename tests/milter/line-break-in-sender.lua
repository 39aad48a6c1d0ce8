-- A line break in an envelope address would forge a queue file line:
-- refuse it permanently at MAIL, before any recipient or body.
dofile(scriptdir .. "/common.lua")
local conn = open_conn("client.example.org", "192.0.2.13")
must(mt.helo(conn, "helo.example.org"), "helo")
mt.macro(conn, SMFIC_MAIL, "i", "FORGED1")
must(mt.mailfrom(conn, "<a@example.org>\nO<victim@example.net>"), "mailfrom")
expect(conn, SMFIR_REPLYCODE, "MAIL with a line break in the sender")
mt.disconnect(conn)
