// The hello-world handler every Node configuration serves (sdserve serves
// this module's default export). X-Worker names the process that answered,
// so bench/worker-count.lua can count requests per worker.
const pid = String(process.pid)

export default function hello(req, res) {
  res.setHeader('X-Worker', pid)
  res.end(`hello from ${pid}\n`)
}
