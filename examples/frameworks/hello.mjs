// The smallest app sdserve serves: a plain Node request handler.
//
//   sdserve examples/frameworks/hello.mjs
//
// Each worker imports this module and calls the default export for every
// request, exactly as http.createServer(handler) would.
export default function hello(req, res) {
  res.setHeader('content-type', 'text/plain; charset=utf-8')
  res.end(`hello from worker ${process.pid}\n`)
}
