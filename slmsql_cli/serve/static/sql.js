// SQL highlighting, hand-written on purpose: a highlighter library means a CDN or a vendored file
// several hundred times this size, and the page only needs to colour one SELECT statement. One
// regular expression splits the text into tokens; each becomes a <span> whose text is set, not parsed.

const SQL_KEYWORDS = new Set((
  "select from where and or not in is null like glob between exists case when then else end as " +
  "join inner left right full outer cross natural on using group by having order asc desc limit " +
  "offset union all intersect except distinct with recursive cast collate escape values true false " +
  "over partition rows range preceding following unbounded current row filter window"
).split(" "));
const SQL_TOKEN = new RegExp([
  String.raw`(--[^\n]*|\/\*[\s\S]*?(?:\*\/|$))`, // 1 comment
  String.raw`('(?:[^']|'')*'?)`, // 2 string
  String.raw`("(?:[^"]|"")*"?|\x60[^\x60]*\x60?|\[[^\]]*\]?)`, // 3 quoted identifier
  String.raw`(\b\d+(?:\.\d*)?(?:[eE][-+]?\d+)?\b|\.\d+\b)`, // 4 number
  String.raw`([A-Za-z_][A-Za-z0-9_$]*)(?=\s*\()`, // 5 function name
  String.raw`([A-Za-z_][A-Za-z0-9_$]*)`, // 6 word
].join("|"), "g");

export function highlightSql(target, sql) {
  target.replaceChildren();
  let last = 0;
  const add = (text, cls) => {
    if (!text) return;
    if (!cls) { target.append(text); return; }
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    target.append(span);
  };
  for (const m of sql.matchAll(SQL_TOKEN)) {
    add(sql.slice(last, m.index));
    const [text, comment, str, ident, num, fn, word] = m;
    let cls = "";
    if (comment) cls = "comment";
    else if (str) cls = "str";
    else if (ident) cls = "ident";
    else if (num) cls = "num";
    else if (fn) cls = SQL_KEYWORDS.has(fn.toLowerCase()) ? "kw" : "fn";
    else if (word && SQL_KEYWORDS.has(word.toLowerCase())) cls = "kw";
    add(text, cls);
    last = m.index + text.length;
  }
  add(sql.slice(last));
}
