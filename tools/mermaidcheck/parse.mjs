// parse.mjs parses Mermaid diagrams with Mermaid's own parser
// (mermaid.parse), as a renderer such as GitHub's would before drawing them.
// tools/docscheck runs it; make docs-check installs it with its pinned
// dependencies into .run/tools/mermaidcheck (npm ci).
//
// Standard input: a JSON array of diagram texts. Standard output: a JSON
// array of the same length, null for a diagram that parses and the parser's
// message for one that does not. Exit status 0 unless the input itself
// cannot be read.
//
// Mermaid sanitizes labels with DOMPurify, which needs a DOM: outside a
// browser jsdom provides one. It must be in place before mermaid is loaded.
import { JSDOM } from 'jsdom';

const { window } = new JSDOM('');
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

let input = '';
for await (const chunk of process.stdin) {
  input += chunk;
}
const diagrams = JSON.parse(input);
if (!Array.isArray(diagrams)) {
  throw new Error('want a JSON array of diagram texts on standard input');
}

const results = [];
for (const text of diagrams) {
  try {
    await mermaid.parse(text);
    results.push(null);
  } catch (err) {
    results.push(String(err && err.message ? err.message : err));
  }
}
process.stdout.write(JSON.stringify(results) + '\n');
