-- A queue id that is not a safe file name is never used as one.
dofile(scriptdir .. "/common.lua")
local conn = open_conn("client.example.org", "192.0.2.11")
must(mt.helo(conn, "helo.example.org"), "helo")
mt.macro(conn, SMFIC_MAIL, "i", "../../etc/passwd")
local r = transaction(conn, "<unsafe@example.org>", {"<a@example.com>"},
  {{"Subject", "unsafe id"}}, {"body\r\n"})
if r ~= SMFIR_DISCARD then error("expected DISCARD, got " .. tostring(r)) end
mt.disconnect(conn)
