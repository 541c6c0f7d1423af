// The README's construct reference, generated from the docstrings of constructs/: for each exported
// class, its purpose (the first paragraph of the class docstring), how it is created, its props with
// their defaults (and the option interfaces they take), its attributes and the methods worth knowing
// (grant*, metric*, add*, static factories). The README marks each generated block:
//
//   <!-- construct-reference: DatasetStore -->
//   ...generated...
//   <!-- /construct-reference -->
//
// and keeps by hand what lies between the blocks (the section's introduction and one example per
// block, which test/readme-examples.test.ts compiles and synthesizes).
//
//   npx tsx scripts/construct-reference.ts           rewrites the blocks in README.md
//   npx tsx scripts/construct-reference.ts --check   exits 1 when README.md differs from what it would write
//
// test/construct-reference.test.ts runs the check. Generation fails on an exported class that no
// block documents, a block naming an unknown class, and an optional prop without `@default`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';
import { writeReadmeSection } from './readme-section';

const ROOT = path.resolve(__dirname, '..');
const BLOCK = /^<!-- construct-reference: (.+?) -->\n[\s\S]*?^<!-- \/construct-reference -->$/gm;
/** Instance methods worth listing; static methods (factories) are always listed. */
const LISTED_METHODS = /^(grant|metric|add)[A-Z0-9]/;

interface Sources {
  readonly classes: Map<string, ts.ClassDeclaration>;
  readonly interfaces: Map<string, ts.InterfaceDeclaration>;
}

/** Every exported class and every interface declared in constructs/ (handlers and tests excepted). */
export function readSources(root = ROOT): Sources {
  const classes = new Map<string, ts.ClassDeclaration>();
  const interfaces = new Map<string, ts.InterfaceDeclaration>();
  for (const file of constructFiles(path.join(root, 'constructs'))) {
    const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
    for (const statement of source.statements) {
      if (ts.isClassDeclaration(statement) && statement.name && hasModifier(statement, ts.SyntaxKind.ExportKeyword)) {
        classes.set(statement.name.text, statement);
      } else if (ts.isInterfaceDeclaration(statement)) {
        if (interfaces.has(statement.name.text)) throw new Error(`two interfaces named ${statement.name.text} in constructs/: the reference cannot tell them apart`);
        interfaces.set(statement.name.text, statement);
      }
    }
  }
  return { classes, interfaces };
}

function constructFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'handler' ? [] : constructFiles(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

/**
 * The README with every generated block rewritten from the sources. Throws when a block names an
 * unknown class, when an exported class has no block, or when an optional prop has no `@default`.
 */
export function renderReadme(readme: string, sources: Sources = readSources()): string {
  const documented = new Set<string>();
  const rendered = readme.replace(BLOCK, (_block, names: string) => {
    const classNames = names.split(',').map((name) => name.trim());
    for (const name of classNames) {
      if (!sources.classes.has(name)) throw new Error(`README.md: a construct-reference block names ${name}, which constructs/ does not export`);
      if (documented.has(name)) throw new Error(`README.md: ${name} has two construct-reference blocks`);
      documented.add(name);
    }
    return [`<!-- construct-reference: ${classNames.join(', ')} -->`, ...classNames.map((name) => renderClass(name, sources)), '<!-- /construct-reference -->'].join('\n\n');
  });
  const missing = [...sources.classes.keys()].filter((name) => !documented.has(name));
  if (missing.length > 0) {
    throw new Error(`README.md documents no ${missing.join(', ')}: add a block "<!-- construct-reference: ${missing[0]} -->" ... "<!-- /construct-reference -->" (and an example) to the construct reference`);
  }
  return rendered;
}

function renderClass(name: string, sources: Sources): string {
  const declaration = sources.classes.get(name)!;
  const parts = [`### ${name}`, purpose(declaration)];
  const constructor = declaration.members.find(ts.isConstructorDeclaration);
  const statics = methods(declaration, true);
  // Props and the option interfaces they take, right after the constructor.
  const propsType = constructor?.parameters.map((p) => p.type && typeName(p.type)).find((t) => t !== undefined && sources.interfaces.has(t));
  const propOptions: string[] = [];
  if (constructor && !hasModifier(constructor, ts.SyntaxKind.PrivateKeyword) && !hasModifier(declaration, ts.SyntaxKind.AbstractKeyword)) {
    parts.push(`\`new ${name}(${parameters(constructor.parameters)})\``);
    if (propsType) {
      parts.push(propsTable(sources.interfaces.get(propsType)!, sources));
      collectOptionTypes(propsType, sources, propOptions);
      propOptions.shift();
      parts.push(...optionTables(propOptions, [propsType, ...propOptions], [], sources));
    }
  }
  const attributes = declaration.members
    .filter((member) => (ts.isPropertyDeclaration(member) && hasModifier(member, ts.SyntaxKind.ReadonlyKeyword)) || ts.isGetAccessorDeclaration(member))
    .filter((member) => isPublic(member) && !hasModifier(member, ts.SyntaxKind.StaticKeyword))
    .map((member) => memberName(member));
  // `public readonly` constructor parameters are attributes too.
  attributes.push(...(constructor?.parameters ?? []).filter((p) => hasModifier(p, ts.SyntaxKind.PublicKeyword)).map((p) => p.name.getText()));
  if (attributes.length > 0) parts.push(`Attributes: ${attributes.map((a) => `\`${a}\``).join(', ')}.`);
  const listed = [...statics, ...methods(declaration, false).filter((m) => LISTED_METHODS.test(memberName(m)))];
  if (listed.length > 0) {
    const line = (m: ts.MethodDeclaration) =>
      `- \`${hasModifier(m, ts.SyntaxKind.StaticKeyword) ? `${name}.` : ''}${memberName(m)}(${parameters(m.parameters)})\`: ${firstParagraph(docText(m))}`;
    parts.push(`Methods:\n\n${listed.map(line).join('\n')}`);
  }
  // The option interfaces the static factories take, after the factories.
  const factoryOptions: string[] = [];
  for (const parameter of statics.flatMap((method) => [...method.parameters])) {
    const type = parameter.type && typeName(parameter.type);
    if (type && sources.interfaces.has(type) && !/^I[A-Z]/.test(type)) collectOptionTypes(type, sources, factoryOptions);
  }
  parts.push(...optionTables(factoryOptions, factoryOptions, statics, sources));
  return parts.join('\n\n');
}

/** A table per option interface, titled with the props (or factories) that take it. */
function optionTables(options: string[], interfaces: string[], factories: ts.MethodDeclaration[], sources: Sources): string[] {
  return options.map((option) => {
    const users: string[] = [];
    for (const iface of interfaces.map((i) => sources.interfaces.get(i)!)) {
      for (const property of iface.members.filter(ts.isPropertySignature)) {
        if (referencedTypes(property.type).includes(option)) users.push(`\`${property.name.getText()}\``);
      }
    }
    for (const method of factories) {
      if (method.parameters.some((p) => referencedTypes(p.type).includes(option))) users.push(`\`${memberName(method)}()\``);
    }
    const taken = [...new Set(users)];
    return `**\`${option}\`**${taken.length > 0 ? ` (${taken.join(', ')})` : ''}\n\n${propsTable(sources.interfaces.get(option)!, sources)}`;
  });
}

/** The class docstring's first paragraph, and the next ones while a paragraph ends with a colon. */
function purpose(declaration: ts.ClassDeclaration): string {
  const paragraphs = docText(declaration).split(/\n\s*\n/);
  const taken = [paragraphs[0]];
  while (taken[taken.length - 1].trimEnd().endsWith(':') && taken.length < paragraphs.length) taken.push(paragraphs[taken.length]);
  const text = oneLine(taken.join(' '));
  if (!text) throw new Error(`${declaration.name?.text} has no docstring: the reference takes its purpose from it`);
  return text;
}

function propsTable(declaration: ts.InterfaceDeclaration, sources: Sources): string {
  const rows = declaration.members.filter(ts.isPropertySignature).map((property) => {
    const owner = (property.parent as ts.InterfaceDeclaration).name.text;
    const name = property.name.getText();
    const tags = ts.getJSDocTags(property);
    const defaultTag = tags.find((tag) => tag.tagName.text === 'default');
    const deprecated = tags.find((tag) => tag.tagName.text === 'deprecated');
    let defaultText: string;
    if (!property.questionToken) {
      defaultText = '*required*';
    } else if (defaultTag) {
      defaultText = renderDefault(oneLine(tagText(defaultTag)));
    } else {
      throw new Error(`${owner}.${name} is optional and has no @default: add "@default - <what happens>" to its docstring`);
    }
    const description = oneLine(docText(property));
    const text = deprecated ? `**Deprecated:** ${oneLine(tagText(deprecated))} ${description}` : description;
    return row([`\`${name}\``, `\`${oneLine(property.type?.getText() ?? 'unknown')}\``, defaultText, text]);
  });
  const table = ['| prop | type | default | what it does |', '| --- | --- | --- | --- |', ...rows].join('\n');
  const bases = baseInterfaces(declaration, sources).map((base) => `\`${base.name.text}\``);
  return bases.length > 0 ? `${table}\n\nAnd the props of ${bases.join(', ')}.` : table;
}

/** `@default 2048 - more than...` renders as `` `2048` - more than...``; `@default - a new key` as `a new key`. */
function renderDefault(text: string): string {
  if (text.startsWith('- ')) return text.slice(2);
  let depth = 0;
  let quote: string | undefined;
  let end = 0;
  for (; end < text.length; end++) {
    const c = text[end];
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"' || c === '`') {
      quote = c;
    } else if ('([{'.includes(c)) {
      depth++;
    } else if (')]}'.includes(c)) {
      depth--;
    } else if (/\s/.test(c) && depth === 0) {
      break;
    }
  }
  let code = text.slice(0, end);
  let rest = text.slice(end);
  const trailing = /[,:;.]$/.exec(code);
  if (trailing) {
    code = code.slice(0, -1);
    rest = trailing[0] + rest;
  }
  return `\`${code}\`${rest}`;
}

/** The option interfaces a props interface takes, depth first, each once (contracts `I...` and classes excepted). */
function collectOptionTypes(name: string, sources: Sources, found: string[]): void {
  if (found.includes(name)) return;
  found.push(name);
  const declaration = sources.interfaces.get(name)!;
  for (const base of baseInterfaces(declaration, sources)) collectOptionTypes(base.name.text, sources, found);
  for (const property of declaration.members.filter(ts.isPropertySignature)) {
    for (const referenced of referencedTypes(property.type)) {
      if (sources.interfaces.has(referenced) && !/^I[A-Z]/.test(referenced)) collectOptionTypes(referenced, sources, found);
    }
  }
}

/** The interfaces of constructs/ that an interface extends. */
function baseInterfaces(declaration: ts.InterfaceDeclaration, sources: Sources): ts.InterfaceDeclaration[] {
  return (declaration.heritageClauses ?? []).flatMap((clause) =>
    clause.types.flatMap((type) => sources.interfaces.get(type.expression.getText()) ?? []),
  );
}

function referencedTypes(type: ts.TypeNode | undefined): string[] {
  if (!type) return [];
  const names: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isTypeReferenceNode(node)) names.push(node.typeName.getText());
    ts.forEachChild(node, visit);
  };
  visit(type);
  return names;
}

function typeName(type: ts.TypeNode): string | undefined {
  return ts.isTypeReferenceNode(type) ? type.typeName.getText() : undefined;
}

function methods(declaration: ts.ClassDeclaration, statics: boolean): ts.MethodDeclaration[] {
  return declaration.members
    .filter(ts.isMethodDeclaration)
    .filter((m) => isPublic(m) && hasModifier(m, ts.SyntaxKind.StaticKeyword) === statics);
}

function parameters(list: ts.NodeArray<ts.ParameterDeclaration>): string {
  return list.map((p) => `${p.name.getText()}${p.questionToken || p.initializer ? '?' : ''}: ${parameterType(p)}`).join(', ');
}

/** The declared type, or the type of a literal initializer (`tag = 'latest'`). */
function parameterType(p: ts.ParameterDeclaration): string {
  if (p.type) return oneLine(p.type.getText());
  if (p.initializer && (ts.isStringLiteral(p.initializer) || ts.isNoSubstitutionTemplateLiteral(p.initializer))) return 'string';
  if (p.initializer && ts.isNumericLiteral(p.initializer)) return 'number';
  if (p.initializer && (p.initializer.kind === ts.SyntaxKind.TrueKeyword || p.initializer.kind === ts.SyntaxKind.FalseKeyword)) return 'boolean';
  throw new Error(`parameter ${p.name.getText()} of ${p.parent.name?.getText() ?? 'a constructor'} has no type the reference can name: declare it`);
}

function docText(node: ts.Node): string {
  const docs = ts.getJSDocCommentsAndTags(node).filter(ts.isJSDoc);
  const comment = docs.length > 0 ? docs[docs.length - 1].comment : undefined;
  return links(ts.getTextOfJSDocComment(comment) ?? '');
}

function tagText(tag: ts.JSDocTag): string {
  return links(ts.getTextOfJSDocComment(tag.comment) ?? '');
}

/** `{@link X}` and `{@link X.y}` as code. */
function links(text: string): string {
  return text.replace(/\{@link(?:code|plain)?\s+([^}\s|]+)(?:[\s|][^}]*)?\}/g, '`$1`');
}

function firstParagraph(text: string): string {
  return oneLine(text.split(/\n\s*\n/)[0]);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** A table row; a cell's `|` is escaped (in code spans too, as GitHub's tables want it). */
function row(cells: string[]): string {
  return `| ${cells.map((cell) => cell.replace(/\|/g, '\\|')).join(' | ')} |`;
}

function memberName(member: ts.ClassElement): string {
  return member.name ? member.name.getText() : '';
}

function hasModifier(node: ts.Node, kind: ts.SyntaxKind): boolean {
  return ts.canHaveModifiers(node) ? (ts.getModifiers(node) ?? []).some((m) => m.kind === kind) : false;
}

function isPublic(node: ts.Node): boolean {
  return !hasModifier(node, ts.SyntaxKind.PrivateKeyword) && !hasModifier(node, ts.SyntaxKind.ProtectedKeyword) && !(ts.isClassElement(node) && node.name && ts.isPrivateIdentifier(node.name));
}

if (require.main === module) {
  writeReadmeSection('construct reference', 'the docstrings', 'construct-reference.ts', (readme) => renderReadme(readme));
}
