import t from 'tap'
import { quoteCommand, quoteWord, splitCommand } from '../../lib/unit/command-line.js'

t.test('quoteWord: plain words stay, the rest is quoted; % and $ doubled', async (t) => {
  t.equal(quoteWord('/srv/app/node_modules/.bin/sdserve'), '/srv/app/node_modules/.bin/sdserve')
  t.equal(quoteWord('--bind=unix:/run/app.sock'), '--bind=unix:/run/app.sock')
  t.equal(quoteWord('50%'), '"50%%"')
  t.equal(quoteWord('$HOME'), '"$$HOME"')
  t.equal(quoteWord('%(h)s %(l)s "%(r)s"'), '"%%(h)s %%(l)s \\"%%(r)s\\""')
  t.equal(quoteWord('a\\b\tc\nd'), '"a\\\\b\\tc\\nd"')
  t.equal(quoteWord(''), '""')
  t.equal(quoteWord("it's"), '"it\'s"')
  t.equal(quoteCommand(['/bin/sdserve', '--log-format', 'a b', 'app.mjs:make()']), '/bin/sdserve --log-format "a b" "app.mjs:make()"')
})

t.test('splitCommand: systemd unquotes and unescapes', async (t) => {
  t.same(splitCommand('/bin/sdserve  --workers 2\tapp.mjs'), ['/bin/sdserve', '--workers', '2', 'app.mjs'])
  t.same(splitCommand(`/bin/x "a b" 'c "d"' e\\ f "g\\"h" 10%% $$X \\n`), ['/bin/x', 'a b', 'c "d"', 'e f', 'g"h', '10%', '$X', '\n'])
  t.same(splitCommand('-/bin/x a'), ['/bin/x', 'a'], 'a prefix is not part of the path')
  t.same(splitCommand('@/bin/x argv0 a'), ['/bin/x', 'a'], "@'s second word is argv[0]")
  t.same(splitCommand('+!/bin/x'), ['/bin/x'])
  t.same(splitCommand(''), [])
  t.same(splitCommand('   '), [])
  t.same(splitCommand('x\\'), ['x\\'], 'a backslash at the end stays')
})

t.test('whatever quoteCommand writes, splitCommand reads back', async (t) => {
  const words = ['/srv/my app/sdserve', '--access-logformat', '%(h)s "%(r)s" $x \\ \t\n', "it's", '', 'plain']
  t.same(splitCommand(quoteCommand(words)), words)
})
