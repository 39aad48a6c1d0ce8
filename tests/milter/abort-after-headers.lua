-- Abort after the headers, then a second transaction on the same
-- connection: only the second message may exist, and no temp file.
dofile(scriptdir .. "/common.lua")
local conn = open_conn("client.example.org", "192.0.2.12")
must(mt.helo(conn, "helo.example.org"), "helo")
mt.macro(conn, SMFIC_MAIL, "i", "ABORTED1")
must(mt.mailfrom(conn, "<first@example.org>"), "mailfrom")
must(mt.rcptto(conn, "<a@example.com>"), "rcptto")
must(mt.data(conn), "data")
expect(conn, SMFIR_CONTINUE, "DATA")
must(mt.header(conn, "Subject", " will be aborted"), "header")
must(mt.eoh(conn), "eoh")
must(mt.bodystring(conn, "partial body\r\n"), "body")
must(mt.abort(conn), "abort")
mt.macro(conn, SMFIC_MAIL, "i", "KEPT2")
local r = transaction(conn, "<second@example.org>", {"<b@example.com>"},
  {{"Subject", "kept"}}, {"second body\r\n"})
if r ~= SMFIR_DISCARD then error("expected DISCARD, got " .. tostring(r)) end
-- Postfix sends an abort after every transaction, even a discarded one.
must(mt.abort(conn), "abort after discard")
mt.disconnect(conn)
