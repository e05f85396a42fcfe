/** A real nginx in front of sdserve, from a config in the test's temp dir, on loopback. */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, getWhenUp, shortTmp, spawnTracked, type Tracked } from './proc.js'

interface Teardown {
  teardown(fn: () => void | Promise<void>): void
}

export interface Nginx {
  port: number
  child: Tracked
  dir: string
}

/**
 * Start `nginx -g 'daemon off;'` proxying to upstream (`unix:/path` or
 * `127.0.0.1:port`) with the headers the seed's nginx.conf sets. Its pid,
 * logs and temp files stay in a fresh directory.
 */
export async function startNginx(t: Teardown, upstream: string): Promise<Nginx> {
  const dir = shortTmp(t)
  const port = await freePort()
  const conf = `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app { server ${upstream} fail_timeout=0; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_redirect off;
      proxy_pass http://app;
    }
  }
}
`
  writeFileSync(join(dir, 'nginx.conf'), conf)
  const child = spawnTracked(t, 'nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'])
  await getWhenUp({ port }, 100, 50).catch(() => undefined)
  return { port, child, dir }
}
