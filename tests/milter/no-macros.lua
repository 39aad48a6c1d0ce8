-- No macros at all: no {i}, no j, no TLS.  msmilter must make up a queue id
-- in MSMail Queue Type format and still spool and DISCARD.
dofile(scriptdir .. "/common.lua")
local conn = open_conn("client.example.org", "192.0.2.10")
must(mt.helo(conn, "helo.example.org"), "helo")
local r = transaction(conn, "<nomacro@example.org>", {"<a@example.com>"},
  {{"Subject", "no macros"}}, {"body\r\n"})
if r ~= SMFIR_DISCARD then error("expected DISCARD, got " .. tostring(r)) end
mt.disconnect(conn)
