// page_render.js PAGE.html STATUS.json: run the status page's inline script
// (guts-node's /) against a status document, with a minimal DOM and fetch
// standing in for a browser, and print the text it rendered, one line per
// table row or event. For machines without a headless browser: it checks
// that the script runs and draws what the document says, not the layout.
'use strict';
const fs = require('fs');
const vm = require('vm');

const html = fs.readFileSync(process.argv[2], 'utf8');
const status = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const m = html.match(/<script>([\s\S]*)<\/script>/);
if (!m) { console.error('page_render: no inline script'); process.exit(1); }

class Node {
  constructor(tag) { this.tag = tag; this.children = []; this.text = ''; this.className = ''; }
  set textContent(v) { this.text = String(v); this.children = []; }
  get textContent() { return this.text + this.children.map(c => c.textContent).join(' '); }
  appendChild(c) { this.children.push(c); return c; }
  replaceChildren() { this.children = []; this.text = ''; }
}
const byId = {};
for (const id of html.matchAll(/id="([^"]+)"/g)) byId[id[1]] = new Node('div');
const document = {
  getElementById: id => { if (!byId[id]) throw new Error('no element #' + id); return byId[id]; },
  createElement: tag => new Node(tag),
};
let fetched = 0;
const fetch = async url => {
  if (url !== '/api/status') throw new Error('page fetched ' + url);
  fetched++;
  return { ok: true, status: 200, json: async () => status };
};
const timers = [];
const ctx = vm.createContext({ document, fetch, console, Date, Math, JSON, String, Error,
                               setInterval: (f, ms) => timers.push([f, ms]) });
vm.runInContext(m[1], ctx);
setTimeout(() => {
  if (!fetched || !timers.length || timers[0][1] > 5000) {
    console.error('page_render: the page did not fetch /api/status or set no refresh');
    process.exit(1);
  }
  if (byId.summary.className === 'bad') {
    console.error('page_render: ' + byId.summary.text);
    process.exit(1);
  }
  for (const id of Object.keys(byId)) {
    const el = byId[id];
    if (el.children.length)
      for (const row of el.children) console.log(id + ': ' + row.textContent);
    else
      console.log(id + ': ' + el.text);
  }
}, 50);
