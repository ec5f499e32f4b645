// Made by scripts/build.mjs from schema.graphql when the console is bundled.
declare module 'backplane:introspection' {
  const introspection: NonNullable<import('@urql/exchange-graphcache').CacheExchangeOpts['schema']>;
  export default introspection;
}
