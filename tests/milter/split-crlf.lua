-- CRLF split across body chunks becomes one LF; a lone CR stays a CR.
dofile(scriptdir .. "/common.lua")
local conn = open_conn("client.example.org", "192.0.2.15")
must(mt.helo(conn, "helo.example.org"), "helo")
mt.macro(conn, SMFIC_MAIL, "i", "SPLITCRLF")
local r = transaction(conn, "<split@example.org>", {"<a@example.com>"},
  {{"Subject", "split"}}, {"one\r", "\ntwo\rthree\r\n", "end\r"})
if r ~= SMFIR_DISCARD then error("expected DISCARD, got " .. tostring(r)) end
mt.disconnect(conn)
