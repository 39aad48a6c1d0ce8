-- Milter Max Envelope Size = 4096: recipients with 413-byte ORCPTs are
-- taken until the budget is spent, then answered 452 (a REPLYCODE) while
-- the transaction goes on; an address over 256 octets is refused at MAIL
-- and at RCPT.  The queue file is checked by test_miltertest.py.
dofile(scriptdir .. "/common.lua")
local conn = open_conn("client.example.org", "192.0.2.10")
expect(conn, SMFIR_CONTINUE, "connect")
must(mt.helo(conn, "helo.example.org"), "helo")

must(mt.mailfrom(conn, "<" .. string.rep("l", 250) .. "@example.org>"), "mailfrom")
expect(conn, SMFIR_REPLYCODE, "MAIL with a 264-octet path")
must(mt.mailfrom(conn, "<env@example.org>"), "mailfrom")
expect(conn, SMFIR_CONTINUE, "MAIL")
must(mt.rcptto(conn, "<" .. string.rep("l", 250) .. "@example.com>"), "rcptto")
expect(conn, SMFIR_REPLYCODE, "RCPT with a 264-octet path")

local orcpt = "ORCPT=rfc822;" .. string.rep("x", 400)  -- miltertest takes no more
local kept, refused = 0, 0
for i = 1, 20 do
  must(mt.rcptto(conn, "<r" .. i .. "@example.com>", orcpt), "rcptto")
  local got = mt.getreply(conn)
  if got == SMFIR_CONTINUE then
    if refused > 0 then error("recipient " .. i .. " taken after a refusal") end
    kept = kept + 1
  elseif got == SMFIR_REPLYCODE then
    refused = refused + 1
  else
    error("RCPT " .. i .. ": unexpected reply " .. tostring(got))
  end
end
-- 15 bytes of sender, then 447 per recipient (address, ORCPT, struct)
if kept ~= 9 or refused ~= 11 then
  error("expected 9 kept and 11 refused, got " .. kept .. " and " .. refused)
end
must(mt.data(conn), "data")
expect(conn, SMFIR_CONTINUE, "DATA")
must(mt.header(conn, "Subject", "budget"), "header")
must(mt.eoh(conn), "eoh")
must(mt.bodystring(conn, "body\r\n"), "body")
must(mt.eom(conn), "eom")
expect(conn, SMFIR_DISCARD, "end of message")
mt.disconnect(conn)
