import time
from postfix import RawSMTP
def test_q(postfix_factory):
    pf = postfix_factory(reinject=True)
    with RawSMTP(pf.reinject_port) as c:
        c.cmd("EHLO t")
        print(c.cmd('MAIL FROM:<"alice b"@example.org>'))
        print(c.cmd('RCPT TO:<"john smith"@example.com>'))
        print(c.cmd('RCPT TO:<"ab"@example.com>'))
        c.cmd("DATA"); c.send(b"Subject: x\r\n\r\nx\r\n"); print(c.cmd("."))
    m = pf.wait_sink(1)
    print(m[0].mail_args, m[0].rcpt_args)
    print(pf.maillog())
