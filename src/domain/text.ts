/**
 * Words in messages built from a variable noun ("must be the id of an Environment"), so the
 * article follows the sound of the noun and not a guess made when the message was written.
 */

// Letters whose spoken name starts with a vowel sound: "an API key", "an S3 bucket".
const VOWEL_SOUND_LETTERS = new Set('AEFHILMNORSX');

/** "a" or "an" for the noun as it is spoken. */
export function articleFor(noun: string): 'a' | 'an' {
  const word = noun.trim();
  if (!word) return 'a';
  // An acronym (two capitals, or a capital then a digit) is spoken letter by letter.
  if (/^[A-Z][A-Z0-9]/.test(word) && !/^[A-Z][a-z]/.test(word)) return VOWEL_SOUND_LETTERS.has(word[0]) ? 'an' : 'a';
  const lower = word.toLowerCase();
  // "u" and "eu" said "you": a user, a unique id, a Europe-only bucket; "one…": a one-off.
  if (/^(uni|use|usu|uti|ure|eu|one)/.test(lower)) return 'a';
  if (/^(hour|honest|honou?r|heir)/.test(lower)) return 'an';
  return /^[aeiou]/.test(lower) ? 'an' : 'a';
}

/** The noun with its indefinite article: "an Environment", "a Project". */
export function withArticle(noun: string): string {
  return `${articleFor(noun)} ${noun}`;
}

/** Like withArticle, capitalised to open a sentence: "An environment…". */
export function withArticleCapitalized(noun: string): string {
  const s = withArticle(noun);
  return s[0].toUpperCase() + s.slice(1);
}
