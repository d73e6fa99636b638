// The pages' one entry point. A page names its module (<body data-page="…">); modules only
// define things, and this runs the page's main() once the document is parsed (module scripts
// are deferred), so node's tests can import any module without a page.

const PAGES = {
  analytics: () => import("./analytics.js"),
  source: () => import("./source-page.js"),
  run: () => import("./run-page.js"),
};

const { main } = await PAGES[document.body.dataset.page]();
main();
