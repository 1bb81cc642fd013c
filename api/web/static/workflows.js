// The YAML editor: Tab indents by two spaces instead of leaving the field (Shift+Tab
// outdents; with several lines selected, both act on every line). Esc, then Tab, leaves
// the editor as usual, so a keyboard user is never trapped in it.
"use strict";

const INDENT = "  ";

function lineStart(text, index) {
  return text.lastIndexOf("\n", index - 1) + 1;
}

function indentLines(area, outdent) {
  const { value, selectionStart: start, selectionEnd: end } = area;
  const from = lineStart(value, start);
  const lines = value.slice(from, end).split("\n");
  const changed = lines.map((line) =>
    outdent ? line.replace(/^ {1,2}/, "") : INDENT + line);
  const firstShift = changed[0].length - lines[0].length;
  const replacement = changed.join("\n");
  area.setRangeText(replacement, from, end, "select");
  area.setSelectionRange(Math.max(from, start + firstShift), from + replacement.length);
}

function onKeyDown(event) {
  const area = event.target;
  if (event.key === "Escape") {
    area.dataset.tabLeaves = "yes";
    return;
  }
  if (event.key !== "Tab" || area.dataset.tabLeaves === "yes") {
    delete area.dataset.tabLeaves;
    return;
  }
  event.preventDefault();
  const multiLine = area.value.slice(area.selectionStart, area.selectionEnd).includes("\n");
  if (event.shiftKey || multiLine) {
    indentLines(area, event.shiftKey);
  } else {
    area.setRangeText(INDENT, area.selectionStart, area.selectionEnd, "end");
  }
  area.dispatchEvent(new Event("input", { bubbles: true }));
}

for (const area of document.querySelectorAll("textarea.code")) {
  area.addEventListener("keydown", onKeyDown);
  area.addEventListener("blur", () => delete area.dataset.tabLeaves);
}
