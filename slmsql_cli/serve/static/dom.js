// The two DOM helpers every module uses. Text is always set as text (`textContent`), never as
// markup: nothing the model or the database returns is ever parsed as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}
