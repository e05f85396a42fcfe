/** The control socket's request lines: JSON and words, every command, and what is refused. */
import t from 'tap'
import { COMMANDS, parseRequest } from '../lib/control-protocol.js'

t.test('every command, as words and as JSON', async (t) => {
  for (const command of COMMANDS) {
    if (command === 'scale') continue
    t.same(parseRequest(command, 8), { command }, `words: ${command}`)
    t.same(parseRequest(`  ${command}\r`, 8), { command }, `words with blanks around: ${command}`)
    t.same(parseRequest(JSON.stringify({ command }), 8), { command }, `JSON: ${command}`)
  }
  t.same(parseRequest('scale 3', 8), { command: 'scale', workers: 3 })
  t.same(parseRequest('scale\t 03 ', 8), { command: 'scale', workers: 3 }, 'blanks between the words, a leading zero')
  t.same(parseRequest('{"command":"scale","workers":3}', 8), { command: 'scale', workers: 3 })
  t.same(parseRequest('{"command":"scale","workers":"4"}', 8), { command: 'scale', workers: 4 }, 'a count as a JSON string of digits')
  t.same(parseRequest('{"command":"status","extra":true}', 8), { command: 'status' }, 'other fields are ignored')
})

t.test('scale: the bounds and bad values', async (t) => {
  t.same(parseRequest('scale 1', 8), { command: 'scale', workers: 1 }, 'the least')
  t.same(parseRequest('scale 8', 8), { command: 'scale', workers: 8 }, 'the most')
  const bad: [string, string][] = [
    ['scale 0', '"0"'],
    ['scale 9', '"9"'],
    ['scale', 'null'],
    ['scale -1', '"-1"'],
    ['scale 1.5', '"1.5"'],
    ['scale 1e1', '"1e1"'],
    ['scale x', '"x"'],
    ['{"command":"scale"}', 'null'],
    ['{"command":"scale","workers":0}', '0'],
    ['{"command":"scale","workers":9}', '9'],
    ['{"command":"scale","workers":2.5}', '2.5'],
    ['{"command":"scale","workers":true}', 'true'],
    ['{"command":"scale","workers":"2 "}', '"2 "'],
    ['{"command":"scale","workers":null}', 'null'],
    ['{"command":"scale","workers":1e300}', '1e+300'],
  ]
  for (const [line, got] of bad) t.throws(() => parseRequest(line, 8), { message: `scale needs a worker count from 1 to 8, got ${got}` }, line)
})

t.test('malformed requests', async (t) => {
  const expected = `expected one of ${COMMANDS.join(', ')}`
  t.throws(() => parseRequest('{"command":', 8), { message: 'not JSON: "{\\"command\\":"' }, 'bad JSON')
  t.throws(() => parseRequest(`{${'x'.repeat(200)}`, 8), { message: `not JSON: ${JSON.stringify(`{${'x'.repeat(79)}`)}` }, 'bad JSON is quoted up to 80 characters')
  t.throws(() => parseRequest('["status"]', 8), { message: 'expected a JSON object' }, 'an array')
  t.throws(() => parseRequest('"status"', 8), { message: 'expected a JSON object' }, 'a JSON string')
  t.throws(() => parseRequest('{"cmd":"status"}', 8), { message: `unknown command undefined: ${expected}` }, 'no command field')
  t.throws(() => parseRequest('{"command":7}', 8), { message: `unknown command 7: ${expected}` }, 'a command that is not a string')
  t.throws(() => parseRequest('{"command":"toString"}', 8), { message: `unknown command "toString": ${expected}` })
  t.throws(() => parseRequest('restart', 8), { message: `unknown command "restart": ${expected}` }, 'an unknown word')
  t.throws(() => parseRequest('STATUS', 8), { message: `unknown command "STATUS": ${expected}` }, 'commands are lower case')
  t.throws(() => parseRequest('', 8), { message: `unknown command "": ${expected}` }, 'nothing')
  t.throws(() => parseRequest('status now', 8), { message: 'too many words: "status now"' })
  t.throws(() => parseRequest('scale 2 3', 8), { message: 'too many words: "scale 2 3"' })
  t.throws(() => parseRequest('reload please', 8), { message: 'too many words: "reload please"' })
})
